"""Policy node: synchronized cameras + odometry -> Trajectory, Reasoning, Path, markers.

A lifecycle node (``rclpy.lifecycle``): *configure* loads the exported weights once and
warms the model up, *activate* starts the inference timer, *deactivate* stops it,
*cleanup* releases the model. With ``autostart`` (the default) it configures and
activates itself at start-up; a failed configure then ends the process with the reason.

A tick starts when the camera sync node completes a frame set, at most ``rate_hz`` by
camera time (``trigger: frames``, :class:`~alpamayo_ros.inference.trigger.FrameTrigger`),
or on a free-running ``rate_hz`` timer (``trigger: timer``). Each tick takes the camera
sync node's newest history window. A tick is
skipped and counted when there is no window yet, when the window is older than
``max_frame_age_s``, when it is the window already used, or when the ego history is
unknown; when the previous inference is still running the tick is dropped and counted,
never queued. Inference runs on its own thread (:class:`LatestOnlyWorker`), off every
subscription callback. Outputs are stamped with the camera time of the window's newest
frame set; ``/diagnostics`` reports inference time, achieved rate and drop ratio. The route
command comes from the latched navigation topic (``navigation_default`` until one
arrives) and goes into the model's navigation tokens.

Camera extrinsics (``camera_extrinsics: tf``, the default): before each inference every
model camera is looked up in TF, from the plan's ``frame_id`` (the ego frame) to the
camera's image ``frame_id`` (its name when empty), so the vehicle's own calibration is
used; a camera whose frame is missing (or whose transform is not rigid) uses
``camera_rig``'s mounting until it appears. Without tf2_ros, or with ``rig``, every camera
uses ``camera_rig``. A ``<node>: camera extrinsics`` diagnostics status says which source
each camera uses, with the translation/rotation the model gets (WARN while TF is in use
but a frame is missing).

The process runs two nodes in one executor: ``camera_sync`` (subscriptions, history) and
``alpamayo_policy`` (this one), which reads the sync node's snapshot in memory.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Path
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.time import Time
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from alpamayo_ros import topics
from alpamayo_ros.calibration import (
    SOURCE_RIG,
    CameraExtrinsics,
    ExtrinsicsConfig,
    matrix_to_transform,
    transform_to_matrix,
)
from alpamayo_ros.inference.config import PolicyNodeConfig
from alpamayo_ros.inference.runner import (
    InputError,
    PolicyOutput,
    PolicyRunner,
    load_rig_geometry,
)
from alpamayo_ros.inference.trigger import FrameTrigger
from alpamayo_ros.inference.worker import LatestOnlyWorker
from alpamayo_ros.msg import Reasoning
from alpamayo_ros.msg import Trajectory as TrajectoryMsg
from alpamayo_ros.nodes.camera_sync import CameraSyncNode, SyncSnapshot, decode_frame
from alpamayo_ros.ros import diagnostics
from alpamayo_ros.ros.conversions import (
    coc_to_reasoning_msg,
    plan_markers,
    trajectory_to_msg,
    trajectory_to_path,
)
from alpamayo_ros.ros.images import ImageConversionError
from alpamayo_ros.ros.params import declare_config
from alpamayo_ros.ros.qos import latched_qos, plan_qos

try:  # TF where it is installed (vehicles, ../shared/ros2-upstream); absent from the pip wheels
    import tf2_ros
except ImportError:  # depends on the installation
    tf2_ros = None

S_TO_NS = 1_000_000_000
SKIP_REASONS = ("no_window", "stale_window", "same_window", "no_odometry", "bad_input",
                "inactive")


class PolicyNode(LifecycleNode):
    """Runs the VLA on the camera sync node's history and publishes its outputs."""

    def __init__(self, sync: CameraSyncNode, node_name: str = "alpamayo_policy",
                 **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.config = declare_config(self, PolicyNodeConfig)
        self.extrinsics_config = declare_config(self, ExtrinsicsConfig)
        self.sync = sync
        self.extrinsics: CameraExtrinsics | None = None
        self._tf_buffer = self._tf_listener = None
        if self.extrinsics_config.camera_extrinsics == "rig":
            self._tf_off_reason = "camera_extrinsics is 'rig'"
        elif tf2_ros is None:
            self._tf_off_reason = "tf2_ros is not importable"
        else:
            self._tf_off_reason = ""
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        self.runner: PolicyRunner | None = None
        self.worker: LatestOnlyWorker | None = None
        self._timer = None
        self._frame_trigger = FrameTrigger(self.config.period_s)
        if self.config.trigger == "frames":
            sync.add_set_listener(self._on_frame_set)
        self._active = False
        self._lock = threading.Lock()
        self.skipped = {reason: 0 for reason in SKIP_REASONS}
        self.published = 0
        self._last_window_stamp_ns: int | None = None
        self._last_output_ms: dict[str, float] = {}
        self._rate_marks: list[float] = []
        self._pubs: dict[str, Any] = {}
        self._configure_error = ""
        self.navigation = self.config.navigation_default
        self.create_subscription(String, topics.NAVIGATION, self._on_navigation, latched_qos())
        self._diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.create_timer(self.config.diagnostics_period_s, self._publish_diagnostics)
        if self.config.autostart:
            self._autostart()

    # ------------------------------------------------------------------ lifecycle
    def _autostart(self) -> None:
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(f"policy node failed to configure: {self._configure_error}")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError("policy node failed to activate")

    def _configure(self) -> None:
        """Load weights, build the runner, warm up, create publishers and the worker."""
        from alpamayo_ros.model.policy import Policy
        from alpamayo_ros.model.weights import WeightsError
        from alpamayo_ros.paths import default_weights_dir

        cfg = self.config
        if cfg.torch_threads:
            import torch

            torch.set_num_threads(cfg.torch_threads)
        weights_dir = cfg.weights_dir or str(default_weights_dir())
        if not cfg.weights_dir and not default_weights_dir().is_dir():
            raise ValueError(f"parameter 'weights_dir' is empty and the shipped default "
                             f"weights ({default_weights_dir()}) are missing: point it at an "
                             f"exported weights directory (config.json + model.safetensors)")
        try:
            policy = Policy.from_pretrained(weights_dir, cfg.device)
        except (WeightsError, OSError) as exc:
            raise ValueError(f"cannot load weights from {weights_dir!r}: {exc}") from exc
        cfg = dataclasses.replace(cfg, weights_dir=weights_dir)  # the directory used
        self.runner = PolicyRunner(cfg, policy, load_rig_geometry(cfg.camera_rig))
        self.extrinsics = CameraExtrinsics(
            {c: self.runner.rig[c].camera_to_ego for c in cfg.model_cameras},
            tf_available=self._tf_buffer is not None,
            unavailable_reason=f"from camera_rig: {self._tf_off_reason}")
        missing = [c for c in cfg.model_cameras if c not in self.sync.sync_config.camera_names]
        if missing:
            raise ValueError(f"model_cameras {missing} are not synchronized by the camera "
                             f"sync node (camera_names {self.sync.sync_config.camera_names})")
        warm_s = self.runner.warmup(cfg.warmup_runs) if cfg.warmup_runs else math.nan
        make = self.create_lifecycle_publisher
        self._pubs = {
            "trajectory": make(TrajectoryMsg, topics.TRAJECTORY, plan_qos()),
            "reasoning": make(Reasoning, topics.REASONING, plan_qos()),
            "path": make(Path, topics.PATH, plan_qos()),
            "markers": make(MarkerArray, topics.MARKERS, plan_qos()),
        }
        self.worker = LatestOnlyWorker("alpamayo_inference", self._on_worker_error)
        self.get_logger().info(
            f"loaded {self.runner.model_id} ({policy.num_parameters() / 1e6:.2f} M params) on "
            f"{policy.device}; warm-up inference {warm_s * 1e3:.0f} ms; cameras "
            f"{list(cfg.model_cameras)}; {cfg.rate_hz} Hz, flow_steps {cfg.flow_steps}, "
            f"reasoning {'on' if cfg.reasoning else 'off'}")

    def _activate(self) -> None:
        self._frame_trigger.reset()
        self._active = True
        if self.config.trigger == "timer" and self._timer is None:
            self._timer = self.create_timer(self.config.period_s, self._tick)

    def _deactivate(self) -> None:
        self._active = False
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.worker is not None:
            self.worker.wait_idle(10.0)

    def _cleanup(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.worker = None
        self.runner = None
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and warm up the model."""
        try:
            self._configure()
        except Exception as exc:  # report any failure as a failed transition
            self._configure_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"configure failed: {self._configure_error}")
            self.runner = None
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the inference timer."""
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the inference timer (the running inference finishes)."""
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model."""
        self._cleanup()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything."""
        self._deactivate()
        self._cleanup()
        return super().on_shutdown(state)

    def destroy_node(self) -> None:
        """Stop the worker thread before the node goes."""
        worker = getattr(self, "worker", None)  # absent when __init__ failed
        if worker is not None:
            worker.stop(timeout_s=10.0)
        super().destroy_node()

    # ------------------------------------------------------------------ ticks
    def _on_navigation(self, msg: String) -> None:
        with self._lock:
            changed = msg.data != self.navigation
            self.navigation = msg.data
        if changed:
            self.get_logger().info(f"navigation command: {msg.data!r}")

    def _skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] += 1

    def _on_frame_set(self, stamp_ns: int) -> None:
        """Camera sync completed a set (its executor thread): a tick when one is due."""
        if self._active and self._frame_trigger.due(stamp_ns):
            self._tick()

    def _tick(self) -> None:
        if not self._active or self.runner is None or self.worker is None:
            self._skip("inactive")
            return
        snapshot = self.sync.snapshot()
        if snapshot is None:
            self._skip("no_window")
            return
        stamp_ns = snapshot.window.stamp_ns
        now_ns = self.get_clock().now().nanoseconds
        if now_ns - stamp_ns > self.config.max_frame_age_s * S_TO_NS:
            self._skip("stale_window")
            return
        if stamp_ns == self._last_window_stamp_ns:
            self._skip("same_window")
            return
        if self.worker.submit(lambda: self._infer(snapshot, now_ns)):
            self._last_window_stamp_ns = stamp_ns
            self._frame_trigger.submitted(stamp_ns)

    def _infer(self, snapshot: SyncSnapshot, tick_ns: int) -> None:
        """Worker thread: decode, build the sample, run the model, publish."""
        runner = self.runner
        if runner is None:
            return
        start_ns = self.get_clock().now().nanoseconds
        window = snapshot.window
        stamp_ns = window.stamp_ns
        history = self.sync.ego_history(stamp_ns)
        if history is None:
            self._skip("no_odometry")
            return
        index = {name: i for i, name in enumerate(snapshot.camera_names)}
        sets = window.sets[-runner.num_frames:]
        try:
            frames = [[decode_frame(s.items[index[c]]) for c in self.config.model_cameras]
                      for s in sets]
            for camera, k in snapshot.intrinsics.items():
                if camera in self.config.model_cameras:
                    runner.set_intrinsics(camera, k)
            self._refresh_extrinsics(runner, {c: sets[-1].items[index[c]]
                                              for c in self.config.model_cameras})
            with self._lock:
                navigation = self.navigation
            sample = runner.build_sample(frames, stamp_ns, history, navigation)
        except (ImageConversionError, InputError) as exc:
            self._skip("bad_input")
            self.get_logger().warning(f"skipping frame set {stamp_ns}: {exc}",
                                      throttle_duration_sec=5.0)
            return
        decoded_ns = self.get_clock().now().nanoseconds
        output = runner.infer(sample)
        model_done_ns = self.get_clock().now().nanoseconds
        self._publish(output)
        if self.config.plan_timing_diagnostics:
            self._publish_plan_timing(output, tick_ns, start_ns, decoded_ns, model_done_ns)

    def _refresh_extrinsics(self, runner: PolicyRunner, newest: dict[str, Any]) -> None:
        """Look every model camera up in TF; hand the runner TF's or the rig's mounting."""
        extrinsics = self.extrinsics
        if extrinsics is None:
            return
        if self._tf_buffer is not None:
            ego = self.config.frame_id
            for camera, msg in newest.items():
                frame = getattr(getattr(msg, "header", None), "frame_id", "") or camera
                before = extrinsics.states()[camera]
                try:
                    tf = self._tf_buffer.lookup_transform(ego, frame, Time()).transform
                    matrix = transform_to_matrix(
                        (tf.translation.x, tf.translation.y, tf.translation.z),
                        (tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w))
                    state = extrinsics.update(camera, frame, matrix)
                except tf2_ros.TransformException as exc:
                    state = extrinsics.update(camera, frame, None,
                                              f"no TF {ego} -> {frame}: {exc}")
                except ValueError as exc:  # a quaternion that is no rotation
                    state = extrinsics.update(camera, frame, None,
                                              f"TF transform refused: {exc}")
                if state.source != before.source or state.tf_frame != before.tf_frame:
                    if state.source == SOURCE_RIG:
                        self.get_logger().warning(
                            f"camera {camera}: extrinsics from camera_rig ({state.detail})")
                    else:
                        self.get_logger().info(
                            f"camera {camera}: extrinsics from TF ({ego} -> {frame})")
        for camera in newest:
            runner.set_extrinsics(camera, extrinsics.camera_to_ego(camera))

    def _publish(self, output: PolicyOutput) -> None:
        plan = output.trajectory
        self._pubs["trajectory"].publish(trajectory_to_msg(plan, output.samples))
        self._pubs["reasoning"].publish(coc_to_reasoning_msg(output.coc, plan.stamp_ns,
                                                             plan.frame_id))
        self._pubs["path"].publish(trajectory_to_path(plan))
        self._pubs["markers"].publish(plan_markers(plan, output.coc.text, output.samples))
        with self._lock:
            self.published += 1
            self._last_output_ms = dict(output.timings_ms)
            self._rate_marks.append(time.monotonic())
            self._rate_marks = self._rate_marks[-20:]

    def _publish_plan_timing(self, output: PolicyOutput, tick_ns: int, start_ns: int,
                             decoded_ns: int, model_done_ns: int) -> None:
        """One plan's stage times (ms) as a diagnostics status (``plan_timing_diagnostics``).

        Node-clock times (camera stamps on the same clock): ``sync`` is camera stamp -> the
        tick that took the window (transport, grouping, waiting for the tick); ``queue``
        tick -> worker start; ``decode`` image decoding and sample building; ``model_*``
        the runner's stages (``model_total_ms`` = preprocess to trajectory); ``publish``
        the four output messages; ``stamp_to_publish`` all of them.
        """
        done_ns = self.get_clock().now().nanoseconds
        stamp_ns = output.trajectory.stamp_ns
        values: dict[str, object] = {
            "stamp_ns": stamp_ns, "sync_ms": (tick_ns - stamp_ns) / 1e6,
            "queue_ms": (start_ns - tick_ns) / 1e6, "decode_ms": (decoded_ns - start_ns) / 1e6,
            "publish_ms": (done_ns - model_done_ns) / 1e6,
            "stamp_to_publish_ms": (done_ns - stamp_ns) / 1e6,
            "reasoning_passes": output.reasoning_passes,
            "draft_tokens_accepted": output.draft_tokens_accepted,
        }
        values.update({f"model_{k}_ms": v for k, v in output.timings_ms.items()})
        status = diagnostics.status(f"{self.get_name()}: plan timing", self.get_name(),
                                    diagnostics.OK, "per-plan stage times (ms)", values)
        self._diag_pub.publish(diagnostics.array(done_ns, [status]))

    def _on_worker_error(self, error: BaseException, detail: str) -> None:
        self.get_logger().error(f"inference failed: {error}\n{detail}",
                                throttle_duration_sec=5.0)

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        stats = self.worker.stats() if self.worker is not None else None
        with self._lock:
            marks = list(self._rate_marks)
            timings = dict(self._last_output_ms)
            skipped = dict(self.skipped)
            published = self.published
        rate = ((len(marks) - 1) / (marks[-1] - marks[0])
                if len(marks) > 1 and marks[-1] > marks[0] else math.nan)
        values: dict[str, object] = {
            "active": self._active, "published": published, "achieved_rate_hz": rate,
            "target_rate_hz": self.config.rate_hz,
            "inference_time_ms": timings.get("total", math.nan),
            "navigation": self.navigation,
        }
        values.update({f"stage_{k}_ms": v for k, v in timings.items() if k != "total"})
        values.update({f"skipped_{k}": v for k, v in skipped.items()})
        if stats is not None:
            values.update({"ticks_dropped_busy": stats.dropped_busy,
                           "drop_ratio": stats.drop_ratio, "inference_failures": stats.failed,
                           "last_error": stats.last_error})
        if self.runner is not None:
            values.update({"model_id": self.runner.model_id,
                           "device": str(self.runner.policy.device)})
        if not self._active:
            level, message = diagnostics.WARN, "inactive (not configured or deactivated)"
        elif stats is not None and stats.failed:
            level, message = diagnostics.ERROR, f"inference failures: {stats.last_error}"
        elif published == 0:
            level, message = diagnostics.WARN, "waiting for synchronized frames and odometry"
        else:
            level, message = diagnostics.OK, f"publishing plans at {rate:.2f} Hz"
        now_ns = self.get_clock().now().nanoseconds
        statuses = [diagnostics.status(f"{self.get_name()}: policy", self.get_name(), level,
                                       message, values)]
        if self.extrinsics is not None and self.runner is not None:
            statuses.append(self._extrinsics_status(self.extrinsics, self.runner))
        self._diag_pub.publish(diagnostics.array(now_ns, statuses))

    def _extrinsics_status(self, extrinsics: CameraExtrinsics, runner: PolicyRunner) -> Any:
        """Which source each camera's extrinsics come from, and what the runner holds."""
        states = extrinsics.states()
        values: dict[str, object] = {"camera_extrinsics": self.extrinsics_config.camera_extrinsics,
                                     "source": extrinsics.summary(),
                                     "tf_available": extrinsics.tf_available}
        for camera, state in states.items():
            (x, y, z), (qx, qy, qz, qw) = matrix_to_transform(runner.rig[camera].camera_to_ego)
            values[f"{camera}/source"] = state.source
            values[f"{camera}/tf_frame"] = state.tf_frame
            values[f"{camera}/translation_m"] = f"{x:.4f} {y:.4f} {z:.4f}"
            values[f"{camera}/rotation_xyzw"] = f"{qx:.5f} {qy:.5f} {qz:.5f} {qw:.5f}"
            values[f"{camera}/detail"] = state.detail
        missing = [c for c, s in states.items() if s.source == SOURCE_RIG]
        if not extrinsics.tf_available:
            level, message = diagnostics.OK, f"all cameras from camera_rig ({self._tf_off_reason})"
        elif missing:
            level, message = diagnostics.WARN, (f"no TF calibration for {', '.join(missing)}: "
                                                "using camera_rig for them")
        else:
            level, message = diagnostics.OK, "all cameras from TF"
        return diagnostics.status(f"{self.get_name()}: camera extrinsics", self.get_name(),
                                  level, message, values)


def main(args: list[str] | None = None) -> None:
    """``ros2 run alpamayo_ros policy_node``: camera sync + policy in one process."""
    from alpamayo_ros.ros.runner import run_node

    def make_nodes() -> list[Any]:
        sync = CameraSyncNode()
        return [sync, PolicyNode(sync)]

    try:
        # Callbacks are short (inference runs on the worker thread); a
        # MultiThreadedExecutor measured ~1 s stalls between timer callbacks here.
        run_node(make_nodes, args)
    except (RuntimeError, ValueError) as exc:
        print(f"[alpamayo_policy] fatal: {exc}", flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
