"""UPSNet: a unified panoptic segmentation network (Xiong et al., CVPR 2019) in PyTorch.

Usable without ROS. See README.md for the architecture and the label encoding.
"""
