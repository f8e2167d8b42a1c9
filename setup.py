"""fmanet-plugin: FMA-Net (CVPR 2024) for BasicSR and OpenMMLab.

Install note: basicsr 1.4.2 ships only a source distribution whose setup.py imports torch. Install
torch first and then basicsr with ``pip install --no-build-isolation basicsr==1.4.2``; without that flag
pip builds it in an isolated environment and downloads a second torch. ``make test`` / ``make demo``
(scripts/bootstrap.sh) do this for you. The plugin itself installs with
``pip install --no-build-isolation -e .``.
"""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name='fmanet-plugin',
    version='0.1.0',
    description='FMA-Net joint video super-resolution and deblurring as a BasicSR / OpenMMLab plugin',
    long_description=Path(__file__).with_name('README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['fmanet_plugin', 'fmanet_plugin.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.0',
        'torchvision>=0.15',
        'basicsr>=1.4.2,<1.5',
        'numpy',
        'opencv-python',
        'lmdb',
        'tqdm',
        'pyyaml',
        'addict',
        'av>=14,<19',  # video decoding/encoding (FFmpeg in the wheels)
        'scenedetect>=0.7,<0.8',  # scene cuts in tools/prepare_vsrdb.py (0.7 timecode API)
    ],
    extras_require={
        'mm': ['mmengine>=0.10,<0.11', 'mmcv-lite>=2.0'],
        'bench': ['matplotlib'],
        'dev': ['pytest', 'ruff', 'pre-commit'],
    },
    license='MIT',
    classifiers=['Programming Language :: Python :: 3', 'Topic :: Scientific/Engineering :: Image Processing'],
)
