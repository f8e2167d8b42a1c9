# FMA-Net stage 1 on REDS (degradation learning network Net_D alone) through mmengine's Runner, released
# hyper-parameters; the same model, data and schedule as options/fmanet_stage1.yml (see its notes on the data
# layout, LMDB and the schedule). Single GPU: python tools/train.py options/mm/fmanet_stage1_reds.py
# 8 GPUs (batch 1 each, total 8): torchrun --nproc_per_node=8 tools/train.py options/mm/fmanet_stage1_reds.py \
#     --launcher pytorch --cfg-options train_dataloader.batch_size=1
custom_imports = dict(imports=['fmanet_plugin.mm'], allow_failed_imports=False)
default_scope = 'mmengine'

model = dict(
    type='fmanet_plugin.FMANetRestorer',
    generator=dict(
        type='fmanet_plugin.FMANet',
        stage=1,
        in_channels=3,
        dim=90,
        ds_kernel_size=20,
        us_kernel_size=5,
        num_rdb=12,
        growth_rate=18,
        num_dense_layer=4,
        num_flow=9,
        num_frma=4,
        num_attn_block=2,
        num_heads=6,
        ffn_expansion_factor=2.66,
        bias=False,
        scale=4,
        num_seq=3,
    ),
    # loss terms in the BasicSR format (basicsr LOSS_REGISTRY types), read by FMANetObjective
    losses=dict(
        recon_opt=dict(type='ReconstructionLoss', loss_weight=1.0),
        hr_warp_opt=dict(type='WarpingLoss', loss_weight=0.1),
        flow_opt=dict(type='FlowLoss', loss_weight=1e-4),
        anchor_d_opt=dict(type='TemporalAnchorLoss', loss_weight=0.1),
    ),
    data_preprocessor=dict(type='fmanet_plugin.FMANetDataPreprocessor'),
)

# LMDB: io_backend=dict(type='lmdb') and the .lmdb folders of tools/create_lmdb.py in data_prefix
data_root = 'datasets/REDS'
train_pipeline = [
    dict(type='fmanet_plugin.LoadVSRDBFrames', window='random', scale=4),
    dict(type='fmanet_plugin.PairedVSRDBRandomCrop', gt_patch_size=256, scale=4),  # LR patch 64
    dict(type='fmanet_plugin.VSRDBRandomFlip', hflip=True, vflip=True, transpose=False),  # released: flips only
    dict(type='fmanet_plugin.PackVSRDBInputs'),
]
train_dataloader = dict(
    batch_size=8,  # per process: 1 with 8 GPUs keeps the released total batch of 8
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='fmanet_plugin.VSRDBDataset',
        data_root=data_root,
        ann_file='meta_info_REDS_train.txt',  # '<clip> <frames> (h,w,c)' per line
        data_prefix=dict(
            lq='train_blur_bicubic/X4',
            gt='train_sharp',
            lq_sharp='train_sharp_bicubic/X4',
            flow='train_flow',  # tools/generate_flow.py (RAFT on the sharp LR frames)
        ),
        exclude_clips=['000', '011', '015', '020'],  # REDS4, held out
        io_backend=dict(type='disk'),
        num_frame=3,
        pipeline=train_pipeline,
    ),
)

# Adam 2e-4 per network; 400 epochs of 3,325 iterations (26,600 samples / batch 8), milestones at 260, 360,
# 380 and 390 epochs. Each network's scheduler steps once per iteration (not the released trainer's bug).
optim_wrapper = dict(
    constructor='fmanet_plugin.FMANetOptimWrapperConstructor',
    net_d=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.999))),
)
param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[864500, 1197000, 1263500, 1296750], gamma=0.5)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1330000)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=5),
)
log_processor = dict(by_epoch=False)
# DDP per sub-module, so that the model's own train_step (joint update of both networks) runs under DDP
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl'))
randomness = dict(seed=0, diff_rank_seed=True)
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
log_level = 'INFO'
load_from = None
resume = False
