# FMA-Net demo, stage 1 (Net_D), through mmengine's Runner: the same network, data and schedule as
# options/demo_stage1.yml on the demo clips (python tools/make_demo_data.py --out datasets/demo).
#   python tools/train.py options/mm/demo_stage1.py            -> work_dirs/demo_stage1/iter_400.pth
_base_ = ['./_base_/fmanet_stage1.py']

model = dict(
    generator=dict(
        dim=18,
        ds_kernel_size=8,
        us_kernel_size=3,
        num_rdb=2,
        growth_rate=8,
        num_dense_layer=2,
        num_flow=3,
        num_frma=2,
        num_attn_block=1,
        num_heads=2,
    ),
)

data_root = 'datasets/demo'
train_pipeline = [
    dict(type='fmanet_plugin.LoadVSRDBFrames', window='random', scale=4),
    dict(type='fmanet_plugin.PairedVSRDBRandomCrop', gt_patch_size=96, scale=4),
    dict(type='fmanet_plugin.VSRDBRandomFlip', hflip=True, vflip=True, transpose=True),
    dict(type='fmanet_plugin.PackVSRDBInputs'),
]
train_dataloader = dict(
    batch_size=4,  # per process
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='meta_info_train.txt', pipeline=train_pipeline),
)

optim_wrapper = dict(net_d=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.999))))
param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[300], gamma=0.5)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=400)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=200))
