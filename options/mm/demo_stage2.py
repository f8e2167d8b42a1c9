# FMA-Net demo, stage 2 (Net_D + Net_R), through mmengine's Runner, mirroring options/demo_stage2.yml; Net_D
# starts from the stage-1 run (options/mm/demo_stage1.py). Validation: PSNR/SSIM (RGB, border 4) and tOF.
#   python tools/train.py options/mm/demo_stage2.py            -> work_dirs/demo_stage2/iter_500.pth
_base_ = ['./demo_stage1.py', './_base_/fmanet_stage2.py']

model = dict(
    generator=dict(stage=2, us_kernel_size=5),
    net_d_checkpoint='work_dirs/demo_stage1/iter_500.pth',
    losses={{_base_.stage2_losses}},
)
optim_wrapper = dict(
    net_d=dict(optimizer=dict(lr=1e-3)),
    net_r=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-3, betas=(0.9, 0.999))),
)
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, T_max=500, eta_min=1e-5)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=500, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))

val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root={{_base_.data_root}}, ann_file='meta_info_val.txt'),
)
