# FMA-Net stage 1 on REDS (degradation learning network Net_D alone) through mmengine's Runner, released
# hyper-parameters; the same model, data and schedule as options/fmanet_stage1.yml (see its notes on the data
# layout, LMDB and the schedule). Single GPU: python tools/train.py options/mm/fmanet_stage1_reds.py
# 8 GPUs (batch 1 each, total 8): torchrun --nproc_per_node=8 tools/train.py options/mm/fmanet_stage1_reds.py \
#     --launcher pytorch --cfg-options train_dataloader.batch_size=1
_base_ = ['./_base_/fmanet_stage1.py']

# the network: FMANet's defaults are the released configuration (dim 90, 12 RDBs, 9 flows, 4 FRMA blocks, ...)
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
    dataset=dict(
        data_root=data_root,
        ann_file='meta_info_REDS_train.txt',  # '<clip> <frames> (h,w,c)' per line
        exclude_clips=['000', '011', '015', '020'],  # REDS4, held out
        pipeline=train_pipeline,
    ),
)

# Adam 2e-4 per network; 400 epochs of 3,325 iterations (26,600 samples / batch 8), milestones at 260, 360,
# 380 and 390 epochs. Each network's scheduler steps once per iteration (not the released trainer's bug).
optim_wrapper = dict(net_d=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.999))))
param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[864500, 1197000, 1263500, 1296750], gamma=0.5)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1330000)

default_hooks = dict(logger=dict(interval=100), checkpoint=dict(interval=5000, max_keep_ckpts=5))
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
