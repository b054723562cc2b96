"""The pure core imports no rclpy and no message package, statically and at run time."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "alpamayo_ros"
ROS_LAYERS = {"ros", "nodes", "msg"}


def is_ros_module(name: str) -> bool:
    root = name.split(".")[0]
    return (
        root in {"rclpy", "message_filters", "tf2_ros", "cv_bridge", "launch", "launch_ros"}
        or root.endswith("_msgs")
        or root == "builtin_interfaces"
        or name.startswith("alpamayo_ros.msg")
        or name.startswith("alpamayo_ros.ros")
        or name.startswith("alpamayo_ros.nodes")
    )


def pure_modules() -> list[Path]:
    return [
        path for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ROS_LAYERS
    ]


def test_pure_layers_import_no_ros_statically() -> None:
    offenders = []
    for path in pure_modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                # relative import inside alpamayo_ros: resolve against the module's package
                base = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-node.level]
                names = [".".join(base + ((node.module,) if node.module else ()))]
            else:
                continue
            offenders += [f"{path.relative_to(PACKAGE.parent)}: {n}" for n in names
                          if is_ros_module(n)]
    assert not offenders, "pure core imports ROS:\n" + "\n".join(offenders)
    assert len(pure_modules()) >= 4  # the check looks at real files


def test_pure_layers_import_no_ros_at_run_time() -> None:
    modules = [
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in pure_modules()
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        if exc.name in ('torch', 'transformers', 'tokenizers', 'onnxruntime'):\n"
        "            continue\n"
        "        raise\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rclpy', 'rosidl_parser', 'rpyutils') or m.split('.')[0].endswith('_msgs') "
        "or m.startswith('alpamayo_ros.msg') or m.startswith('alpamayo_ros.ros'))\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=PACKAGE.parent, timeout=240)
    assert result.returncode == 0, (
        f"ROS modules loaded by the pure core:\n{result.stdout}{result.stderr}")
