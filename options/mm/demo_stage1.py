# FMA-Net demo, stage 1 (Net_D), through mmengine's Runner: the same network, data and schedule as
# options/demo_stage1.yml on the demo clips (python tools/make_demo_data.py --out datasets/demo).
#   python tools/train.py options/mm/demo_stage1.py            -> work_dirs/demo_stage1/iter_500.pth
# The demo's choices (num_flow 9, bias, MSE flow term, Adam 3e-3 with cosine decay) are explained in demo_stage1.yml.
_base_ = ['./_base_/fmanet_stage1.py']

model = dict(
    generator=dict(
        dim=18,
        ds_kernel_size=8,
        us_kernel_size=3,
        num_rdb=2,
        growth_rate=8,
        num_dense_layer=2,
        num_flow=9,
        num_frma=2,
        num_attn_block=1,
        num_heads=2,
        bias=True,
    ),
    losses=dict(flow_opt=dict(type='MSELoss', loss_weight=0.2)),  # the demo's exact flow, not RAFT pseudo-GT
)

data_root = 'datasets/demo'
train_pipeline = [
    dict(type='fmanet_plugin.LoadVSRDBFrames', window='random', scale=4),
    dict(type='fmanet_plugin.PairedVSRDBRandomCrop', gt_patch_size=64, scale=4),
    dict(type='fmanet_plugin.VSRDBRandomFlip', hflip=True, vflip=True, transpose=True),
    dict(type='fmanet_plugin.PackVSRDBInputs'),
]
train_dataloader = dict(
    batch_size=4,  # per process
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='meta_info_train.txt', pipeline=train_pipeline),
)

optim_wrapper = dict(net_d=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=3e-3, betas=(0.9, 0.999))))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, T_max=500, eta_min=1e-4)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=500)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=500))
