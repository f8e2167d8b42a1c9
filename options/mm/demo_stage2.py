# FMA-Net demo, stage 2 (Net_D + Net_R), through mmengine's Runner, mirroring options/demo_stage2.yml; Net_D
# starts from the stage-1 run (options/mm/demo_stage1.py). Validation: PSNR/SSIM (RGB, border 4) and tOF.
#   python tools/train.py options/mm/demo_stage2.py            -> work_dirs/demo_stage2/iter_500.pth
_base_ = ['./demo_stage1.py']

model = dict(
    generator=dict(stage=2, us_kernel_size=5),
    net_d_checkpoint='work_dirs/demo_stage1/iter_500.pth',
    losses=dict(
        net_d_weight=0.1,
        pixel_opt=dict(type='L1Loss', loss_weight=1.0),
        lr_warp_opt=dict(type='WarpingLoss', loss_weight=0.1),
        anchor_r_opt=dict(type='TemporalAnchorLoss', loss_weight=0.1),
    ),
)
optim_wrapper = dict(
    net_d=dict(optimizer=dict(lr=1e-3)),
    net_r=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-3, betas=(0.9, 0.999))),
)
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, T_max=500, eta_min=1e-5)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=500, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))

val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='fmanet_plugin.VSRDBDataset',
        data_root={{_base_.data_root}},
        ann_file='meta_info_val.txt',
        data_prefix=dict(lq='train_blur_bicubic/X4', gt='train_sharp'),
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
