# FMA-Net stage 2 on REDS (Net_D + Net_R, Net_D initialised from stage 1) through mmengine's Runner, released
# hyper-parameters (options/fmanet_stage2.yml). Validation on REDS4: PSNR/SSIM (RGB, border 4) and tOF.
#   python tools/train.py options/mm/fmanet_stage2_reds.py
# Fine-tuning a converted released checkpoint (tools/convert_official_ckpt.py) instead:
#     --cfg-options model.net_d_checkpoint=None model.generator_checkpoint=<converted .pth>
_base_ = ['./fmanet_stage1_reds.py', './_base_/fmanet_stage2.py']

model = dict(
    generator=dict(stage=2),
    net_d_checkpoint='work_dirs/fmanet_stage1_reds/iter_1330000.pth',  # stage-1 Net_D
    losses={{_base_.stage2_losses}},
)
optim_wrapper = dict(net_r=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.999))))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1330000, val_interval=50000)

val_dataloader = dict(
    num_workers=4,
    persistent_workers=True,
    dataset=dict(
        data_root={{_base_.data_root}},
        ann_file='meta_info_REDS_train.txt',
        clips=['000', '011', '015', '020'],  # REDS4
    ),
)
