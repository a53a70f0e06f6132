"""pip install . -- installs the upsnet_core library and the training package (no ROS).

For machines without ROS 2 (training clusters, evaluation jobs): ``python -m training.train``
works there as in the repository. The ROS 2
package (upsnet_ros: node + messages) is built with colcon from package.xml and
CMakeLists.txt instead; colcon takes the build type from package.xml and
ignores this file.
"""

import glob
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, 'README.md')

setup(
    name='upsnet-core',
    version='0.1.0',
    description='UPSNet panoptic segmentation in PyTorch (model, training, evaluation)',
    long_description=open(README, encoding='utf-8').read() if os.path.exists(README) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    author='UPSNet-ROS maintainers',
    author_email='maintainers@upsnet-ros.org',
    packages=find_packages(include=['upsnet_core', 'upsnet_core.*', 'training', 'training.*']),
    package_data={'upsnet_core': ['**/*.json', '**/*.yaml', '*.json', '*.yaml']},
    include_package_data=False,
    # upsnet_core.rosbag_io reads/writes this package's messages (CategoryMap) in bags.
    data_files=[('share/upsnet_ros/msg', sorted(glob.glob('msg/*.msg')))],
    python_requires='>=3.10',
    install_requires=[
        'torch>=2.4',
        'torchvision>=0.19',
        'numpy',
        'numba',
        'opencv-python-headless',
        'PyYAML',
        'pillow',
        'tqdm',
        'pycocotools',
        'tensorboard',
        'rosbags>=0.11',
    ],
    # ONNX export and the onnxruntime backend (upsnet_core.onnx_export / onnx_runtime).
    extras_require={'onnx': ['onnx', 'onnxruntime']},
    # Keep setuptools' intermediate files apart from colcon's build/upsnet_ros.
    options={'build': {'build_base': os.path.join('build', 'setuptools')}},
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: Apache Software License',
    ],
)
