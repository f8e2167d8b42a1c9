# What every FMA-Net stage-2 config (Net_D + Net_R) adds to its stage-1 config: the released stage-2 loss terms
# (merged into model.losses with {{_base_.stage2_losses}}) and validation on a VSRDB test set (windows edge-padded
# at clip ends) with PSNR / SSIM (RGB, border 4) and tOF. A config sets the validation data and the schedule.
# Names differ from the stage-1 config's, since mmengine refuses a key defined by two bases.
stage2_losses = dict(
    net_d_weight=0.1,  # factor of all Net_D terms in stage 2
    pixel_opt=dict(type='L1Loss', loss_weight=1.0),
    lr_warp_opt=dict(type='WarpingLoss', loss_weight=0.1),
    anchor_r_opt=dict(type='TemporalAnchorLoss', loss_weight=0.1),
)

val_dataloader = dict(
    batch_size=1,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='fmanet_plugin.VSRDBDataset',
        data_prefix=dict(lq='train_blur_bicubic/X4', gt='train_sharp'),
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
