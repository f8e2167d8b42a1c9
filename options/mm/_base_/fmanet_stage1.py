# What every FMA-Net stage-1 config (Net_D alone) through mmengine's Runner shares: the plugin's components, the
# released stage-1 loss terms, the VSRDB training data layout and the runtime. A config sets the network size,
# data_root, the training pipeline, batch, optimizer learning rate, schedule and hook intervals.
# Type names carry the plugin's scope, so they resolve under any default_scope (mmengine, mmagic).
custom_imports = dict(imports=['fmanet_plugin.mm'], allow_failed_imports=False)
default_scope = 'mmengine'

model = dict(
    type='fmanet_plugin.FMANetRestorer',
    generator=dict(type='fmanet_plugin.FMANet', stage=1),
    # loss terms in the BasicSR format (basicsr LOSS_REGISTRY types), read by FMANetObjective
    losses=dict(
        recon_opt=dict(type='ReconstructionLoss', loss_weight=1.0),
        hr_warp_opt=dict(type='WarpingLoss', loss_weight=0.1),
        flow_opt=dict(type='FlowLoss', loss_weight=1e-4),
        anchor_d_opt=dict(type='TemporalAnchorLoss', loss_weight=0.1),
    ),
    data_preprocessor=dict(type='fmanet_plugin.FMANetDataPreprocessor'),
)

train_dataloader = dict(
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='fmanet_plugin.VSRDBDataset',
        data_prefix=dict(
            lq='train_blur_bicubic/X4',
            gt='train_sharp',
            lq_sharp='train_sharp_bicubic/X4',
            flow='train_flow',  # tools/generate_flow.py (RAFT on the sharp LR frames)
        ),
        io_backend=dict(type='disk'),  # or dict(type='lmdb') with .lmdb folders in data_prefix
        num_frame=3,
    ),
)

# one optimizer (and scheduler list) per network; each scheduler steps once per iteration
optim_wrapper = dict(constructor='fmanet_plugin.FMANetOptimWrapperConstructor')

# checkpoints written to a temporary name and renamed when complete (mmengine's Runner otherwise)
runner_type = 'fmanet_plugin.AtomicCheckpointRunner'
default_hooks = dict(
    logger=dict(type='LoggerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False),
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
