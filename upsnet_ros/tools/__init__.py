"""Command-line tools around the node: ``make_bag`` (a Cityscapes-format folder to a ROS 2
bag) and ``replay_eval`` (replay a bag through the node and evaluate its outputs)."""
