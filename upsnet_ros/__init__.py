"""UPSNet ROS 2 node package.

At install time (colcon build) this package is merged with the Python code
that rosidl generates for this package's messages (``upsnet_ros.msg``).
Keep this module light: importing the messages imports it first.

``extend_path`` lets this source folder and the installed, merged package
(``install/.../site-packages/upsnet_ros``) act as one package, so that
``upsnet_ros.msg`` still imports when the source tree comes first on
``sys.path`` (for example ``python -m ...`` run from the repository root).
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
