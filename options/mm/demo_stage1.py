# FMA-Net demo, stage 1 (Net_D), through mmengine's Runner: the same network, data and schedule as
# options/demo_stage1.yml on the demo clips (python tools/make_demo_data.py --out datasets/demo).
#   python tools/train.py options/mm/demo_stage1.py            -> work_dirs/demo_stage1/iter_500.pth
# The demo's choices (num_flow 9, bias, MSE flow term, Adam 3e-3 with cosine decay) are explained in demo_stage1.yml.
# Type names carry the plugin's scope, so they resolve under any default_scope (mmengine, mmagic).
custom_imports = dict(imports=['fmanet_plugin.mm'], allow_failed_imports=False)
default_scope = 'mmengine'

model = dict(
    type='fmanet_plugin.FMANetRestorer',
    generator=dict(
        type='fmanet_plugin.FMANet',
        stage=1,
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
    # loss terms in the BasicSR format (basicsr LOSS_REGISTRY types), read by FMANetObjective
    losses=dict(
        recon_opt=dict(type='ReconstructionLoss', loss_weight=1.0),
        hr_warp_opt=dict(type='WarpingLoss', loss_weight=0.1),
        flow_opt=dict(type='MSELoss', loss_weight=0.2),
        anchor_d_opt=dict(type='TemporalAnchorLoss', loss_weight=0.1),
    ),
    data_preprocessor=dict(type='fmanet_plugin.FMANetDataPreprocessor'),
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
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='fmanet_plugin.VSRDBDataset',
        data_root=data_root,
        ann_file='meta_info_train.txt',
        data_prefix=dict(
            lq='train_blur_bicubic/X4',
            gt='train_sharp',
            lq_sharp='train_sharp_bicubic/X4',
            flow='train_flow',
        ),
        io_backend=dict(type='disk'),  # or dict(type='lmdb') with .lmdb folders in data_prefix
        num_frame=3,
        pipeline=train_pipeline,
    ),
)

# one optimizer (and scheduler list) per network; each scheduler steps once per iteration
optim_wrapper = dict(
    constructor='fmanet_plugin.FMANetOptimWrapperConstructor',
    net_d=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=3e-3, betas=(0.9, 0.999))),
)
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, T_max=500, eta_min=1e-4)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=500)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500),
)
log_processor = dict(by_epoch=False)
# DDP per sub-module, so that the model's own train_step (joint update of both networks) runs under DDP
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl'))
randomness = dict(seed=0, diff_rank_seed=True)
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
log_level = 'INFO'
load_from = None
resume = False
