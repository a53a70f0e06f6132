# Runtime environment for this repository: the venv, the colcon install/ of the
# upsnet_ros package (its generated messages) and the Fast DDS transport setting.
#
#   source scripts/env.sh        # bash or zsh, from any directory
#
# Sets (prepending, without duplicates):
#   PATH              .venv/bin                       python3, colcon, pytest
#   PYTHONPATH        install/upsnet_ros/lib/python3.X/site-packages
#                                                     upsnet_ros.msg, installed upsnet_core
#   LD_LIBRARY_PATH   install/upsnet_ros/lib           C type support libraries
#                                                     that the message bindings load
#   AMENT_PREFIX_PATH install/upsnet_ros and .venv     ament index (share dirs,
#                                                     ros2 run / launch)
#   FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA             see README "Large images over Fast DDS"
# The venv's own ROS libraries are added to LD_LIBRARY_PATH by the ROS wheels
# themselves (a .pth file re-executes Python once with the right path).

if [ -n "${BASH_SOURCE[0]:-}" ]; then
  _upsnet_env_file="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
  _upsnet_env_file="${(%):-%x}"
else
  _upsnet_env_file="$0"
fi
UPSNET_ROOT="$(cd "$(dirname "$_upsnet_env_file")/.." && pwd)"
export UPSNET_ROOT
_upsnet_venv="$UPSNET_ROOT/.venv"
_upsnet_install="$UPSNET_ROOT/install/upsnet_ros"

# _upsnet_prepend VAR DIR: put DIR first in the path-list VAR unless already there.
_upsnet_prepend() {
  local _cur
  eval "_cur=\"\${$1:-}\""
  case ":$_cur:" in
    *":$2:"*) ;;
    *) export "$1=$2${_cur:+:$_cur}" ;;
  esac
}

_upsnet_prepend PATH "$_upsnet_venv/bin"
_upsnet_prepend AMENT_PREFIX_PATH "$_upsnet_venv"
_upsnet_prepend AMENT_PREFIX_PATH "$_upsnet_install"
_upsnet_prepend LD_LIBRARY_PATH "$_upsnet_install/lib"
for _upsnet_site in "$_upsnet_install"/lib/python3*/site-packages; do
  if [ -d "$_upsnet_site" ]; then
    _upsnet_prepend PYTHONPATH "$_upsnet_site"
  fi
done
export FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA

unset _upsnet_env_file _upsnet_venv _upsnet_install _upsnet_site
unset -f _upsnet_prepend
