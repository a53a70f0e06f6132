"""``NodeProcess``: upsnet_node started as a separate process (replay evaluation, tests,
benchmarks), stopped the way ``ros2 launch`` stops it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

PACKAGE = "upsnet_ros"


class NodeProcess:
    """The node started from ``command`` (e.g. the installed executable) with ROS arguments;
    its output goes to ``log_path``. Stop with :meth:`stop` (SIGINT, as ros2 launch does);
    :meth:`restart` starts it again after it died, as a launch file's ``respawn`` does."""

    def __init__(self, command: list[str], ros_args: list[str], log_path: Path,
                 env: dict[str, str] | None = None):
        self.log_path = log_path
        self._argv = [*command, "--ros-args", *ros_args]
        self._env = env or os.environ.copy()
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(self._argv, stdout=self._log, stderr=subprocess.STDOUT,
                                env=self._env)

    def restart(self) -> int:
        """Start the node again once its process ended (its log goes on in the same file);
        the exit status of the process that ended."""
        code = self.process.wait()
        self._log.write(f"\n[node_process] the node exited with status {code}; restarting\n")
        self._log.flush()
        self.process = self._start()
        return code

    @classmethod
    def with_parameters(cls, command: list[str], namespace: str, log_path: Path,
                        params_file: Path | None = None, **params: object) -> "NodeProcess":
        """The node in ``namespace`` with ``params_file`` and ``-p key:=value`` overrides."""
        ros_args = ["-r", f"__ns:={namespace}"]
        if params_file is not None:
            ros_args += ["--params-file", str(params_file)]
        for key, value in params.items():
            ros_args += ["-p", f"{key}:={value}"]
        return cls(command, ros_args, log_path)

    @staticmethod
    def module_command() -> list[str]:
        """``python -m upsnet_ros.node`` with this interpreter."""
        return [sys.executable, "-m", "upsnet_ros.node"]

    @staticmethod
    def installed_command() -> list[str]:
        """The installed ``upsnet_node`` executable (what ros2 run and the launch files
        start), else :meth:`module_command`."""
        try:
            from ament_index_python.packages import PackageNotFoundError, get_package_prefix
            executable = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / "upsnet_node"
            if os.access(executable, os.X_OK):
                return [str(executable)]
        except (ImportError, PackageNotFoundError, ValueError):
            pass
        return NodeProcess.module_command()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT, then SIGKILL after ``timeout``; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
