# FMA-Net stage 2 on REDS (Net_D + Net_R, Net_D initialised from stage 1) through mmengine's Runner, released
# hyper-parameters (options/fmanet_stage2.yml). Validation on REDS4: PSNR/SSIM (RGB, border 4) and tOF.
#   python tools/train.py options/mm/fmanet_stage2_reds.py
# Fine-tuning a converted released checkpoint (tools/convert_official_ckpt.py) instead:
#     --cfg-options model.net_d_checkpoint=None model.generator_checkpoint=<converted .pth>
_base_ = ['./fmanet_stage1_reds.py']

model = dict(
    generator=dict(stage=2),
    net_d_checkpoint='work_dirs/fmanet_stage1_reds/iter_1330000.pth',  # stage-1 Net_D
    losses=dict(
        net_d_weight=0.1,  # factor of all Net_D terms in stage 2
        pixel_opt=dict(type='L1Loss', loss_weight=1.0),
        lr_warp_opt=dict(type='WarpingLoss', loss_weight=0.1),
        anchor_r_opt=dict(type='TemporalAnchorLoss', loss_weight=0.1),
    ),
)
optim_wrapper = dict(
    net_r=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.999))),
)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1330000, val_interval=50000)

val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='fmanet_plugin.VSRDBDataset',
        data_root={{_base_.data_root}},
        ann_file='meta_info_REDS_train.txt',
        data_prefix=dict(lq='train_blur_bicubic/X4', gt='train_sharp'),
        clips=['000', '011', '015', '020'],  # REDS4
        io_backend=dict(type='disk'),
        num_frame=3,
        test_mode=True,
        pipeline=[
            dict(type='fmanet_plugin.LoadVSRDBFrames', window='replicate', scale=4),
            dict(type='fmanet_plugin.PackVSRDBInputs'),
        ],
    ),
)
val_evaluator = [
    dict(type='fmanet_plugin.PSNR', crop_border=4),
    dict(type='fmanet_plugin.SSIM', crop_border=4),
    dict(type='fmanet_plugin.TOF'),
]
val_cfg = dict(type='ValLoop')
