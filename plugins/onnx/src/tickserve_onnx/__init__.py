"""ONNX adapter for tickserve: any ONNX classifier, served through onnxruntime.

A model is `model.onnx` plus a manifest naming its feature order (`feature_names`: the
columns of the input tensor) and, in `options`, how to read it:

    {"input": "features",               # the input tensor's name      (default: the only input)
     "probabilities": "probabilities",  # the output to read           (default: the only float
                                        #   tensor output of shape [n, 3])
     "class_order": [0, 1, 2]}          # class_order[j] is the class held by output column j:
                                        #   an index into the manifest's classes (SELL, HOLD, BUY)
                                        #   or a class name; default [0, 1, 2]

Serving needs only onnxruntime. `train()` (the `export` extra: onnxmltools, onnx) trains a
LightGBM or XGBoost model through that adapter's own `train()`, converts it and records the
source's gain importance and the export's measured disagreement with the native model.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from tickserve.plugin import (
    ModelAdapter,
    ModelManifest,
    Progress,
    TrainingData,
    TrainingResult,
    check_feature_order,
    hookimpl,
    installed_adapter,
)

MODEL_FILE = "model.onnx"
INPUT_NAME = "features"
N_CLASSES = 3
#: The project's classes, in the order predict_proba returns them (the manifest's "classes").
CLASSES = ("SELL", "HOLD", "BUY")
#: the adapters whose models onnxmltools converts -> the distribution that provides each; the
#: adapter itself is found as the server finds any, through the installed plugins
SOURCES = {"lightgbm": "tickserve-lightgbm", "xgboost": "tickserve-xgboost"}
DEFAULT_SOURCE = "lightgbm"
#: An export whose predicted class differs from the native model's on more than this share
#: of the validation rows is a conversion bug (wrong class order, unsupported objective), not
#: float32 rounding (measured: at most 0.16% of rows for LightGBM, none for XGBoost): training
#: fails rather than writing it.
MAX_EXPORT_FLIP_RATE = 0.05
_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def session_options() -> ort.SessionOptions:
    """Options for one model's InferenceSession, tuned for single-tick latency.

    Measured on this 2-core machine (AMD EPYC VM, onnxruntime 1.32) with a LightGBM export of
    102 trees x 43 features, `session.run` of the probabilities output, best of 7 x 3,000
    calls (1 row) or 7 x 20 calls (1,000 rows):

                                  idle machine          other core busy
        threads                   1 row   1,000 rows    1 row   1,000 rows   batch-independent
        intra_op 1 (chosen)    14-17 us   4.1 ms     14-17 us   4.1 ms       yes, bit for bit
        intra_op 2, spinning   16-17 us   2.2 ms        32 us   8.4 ms       no (~2e-7)
        intra_op 2, no spinning   27 us   2.3 ms        26 us   4.5 ms       no (~2e-7)

    The whole predict_proba (float64 -> float32, run, float64 renormalisation) takes 29-32 us
    for one row and 4.1-4.3 ms for 1,000 (the native LightGBM adapter: 49-50 us and 3.4 ms).

    One thread: a stream sends one tick per message, and there 2 threads gain nothing with
    spinning and cost 60% without; 2 threads nearly halve 1,000-row batches, but only on an
    idle machine. A server is not idle: its worker pool already runs streams in parallel on
    one shared 1-thread session (session.run releases the GIL: 2 Python threads finish 8 x
    5,000 rows 1.65x faster than one), and with the other core busy 2 spinning threads are
    2x slower. Above all, with 2 threads onnxruntime splits the trees of a batch (from ~64 rows)
    between threads and adds their float32 partial sums in another order, so a tick's
    probabilities would depend on the batch it arrived in (streamed one by one vs Predict
    or Evaluate): with 1 thread they are equal bit for bit.
    """
    so = ort.SessionOptions()
    # 1 thread: see above (same single-row latency, batch-size-independent results).
    so.intra_op_num_threads = 1
    # No parallel branches in a tree ensemble or a small dense graph: no inter-op pool at all.
    so.inter_op_num_threads = 1
    # Sequential: ORT_PARALLEL measured 33-37 us for one row and up to 8.3 ms for 1,000 rows
    # (its pool's scheduling) against 14-17 us and 4.1 ms.
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ENABLE_ALL 13.6-14.5 us, ENABLE_BASIC 14.4 us, DISABLE_ALL 15.2-15.5 us per row: little
    # to fuse in a tree ensemble, but never slower, paid once at load, and helps dense graphs.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting: with 1 thread there is no pool to spin; should anyone raise the thread
    # count, spinning bought nothing at 1,000 rows on a busy machine (8.4 vs 4.5 ms without)
    # and burns a core after every call that the other streams' workers need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # Errors only: the LightGBM converter declares its unused "label" output as shape [1].
    so.log_severity_level = 3
    return so


class OnnxAdapter(ModelAdapter):
    """Serves `model.onnx` through one onnxruntime InferenceSession.

    Thread safety: onnxruntime guarantees that concurrent Run() calls on one InferenceSession
    are safe (the CPU provider keeps per-call state per call; see e.g. microsoft/onnxruntime
    #19301, "InferenceSession::Run() is guaranteed to be thread-safe"), and predict_proba keeps
    no state of its own, so concurrent streams share one session; session.run releases the
    GIL while it runs. tests/test_adapter_onnx.py checks concurrent calls against sequential
    ones, bit for bit.
    """

    name = "onnx"
    native_threads = None  # onnxruntime's own pools, fixed at one intra-op thread per session below

    def __init__(
        self,
        session: ort.InferenceSession,
        input_name: str,
        output_name: str,
        dtype: type,
        columns: np.ndarray | None,
        manifest,
        header: dict[str, str],
    ) -> None:
        self.session = session
        self.input_name = input_name
        self.output_name = output_name
        self.dtype = dtype
        self.columns = columns  # None: the model's columns are already SELL, HOLD, BUY
        self.feature_names = list(manifest.feature_names)
        self.options = dict(manifest.options)
        self.header = header

    @classmethod
    def load(cls, model_dir: Path, manifest: ModelManifest) -> OnnxAdapter:
        raw = (Path(model_dir) / manifest.model_file).read_bytes()
        try:
            session = ort.InferenceSession(raw, session_options(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types are not public
            raise ValueError(f"not a loadable ONNX model: {str(exc).splitlines()[0]}") from None
        options = dict(manifest.options)
        n_features = len(manifest.feature_names)
        classes = list(getattr(manifest, "classes", CLASSES))

        graph_input = _pick_input(session, options.get("input"))
        dtype = _DTYPES.get(graph_input.type)
        if dtype is None:
            raise ValueError(f"input {graph_input.name!r} is {graph_input.type}; need tensor(float) or tensor(double)")
        if len(graph_input.shape) != 2:
            raise ValueError(f"input {graph_input.name!r} has shape {graph_input.shape}; need [n, {n_features}]")
        width = graph_input.shape[1]
        if isinstance(width, int) and width != n_features:
            raise ValueError(
                f"input {graph_input.name!r} takes {width} features, the manifest lists {n_features} (feature_names)"
            )
        stored = session.get_modelmeta().custom_metadata_map.get("tickserve.feature_names")
        if stored:  # written by tickserve's exporter (_annotate); other ONNX files carry none
            try:
                names = json.loads(stored)
            except ValueError:
                names = None
            check_feature_order(names if isinstance(names, list) else None, manifest)
        output = _pick_output(session, options.get("probabilities"))
        columns = _columns(options.get("class_order"), classes)

        adapter = cls(session, graph_input.name, output.name, dtype, columns, manifest, _read_header(raw))
        # One probe row: checks what the declared shapes leave open (symbolic dimensions), that
        # the output is probabilities, and takes the first call's allocations off the first tick.
        try:
            probe = session.run([output.name], {graph_input.name: np.zeros((1, n_features), dtype=dtype)})[0]
        except Exception as exc:
            raise ValueError(
                f"the model does not run on a [1, {n_features}] input: {str(exc).splitlines()[0]}"
            ) from None
        probe = np.asarray(probe)
        if probe.shape != (1, N_CLASSES):
            raise ValueError(
                f"output {output.name!r} gave shape {list(probe.shape)} for one row; need [1, {N_CLASSES}]"
            )
        if not (np.all(probe >= 0) and abs(float(probe.sum()) - 1.0) < 1e-3):
            raise ValueError(
                f"output {output.name!r} is not probabilities (one row gave {probe.ravel().tolist()}); "
                "end the graph with a softmax"
            )
        return adapter

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(features, dtype=self.dtype)  # float64 ticks -> the graph's dtype
        probs = self.session.run([self.output_name], {self.input_name: x})[0].astype(np.float64)
        if self.columns is not None:
            probs = probs[:, self.columns]
        # A float32 softmax sums to 1 only to ~1e-7; the signal rules expect SELL + HOLD + BUY
        # == 1 in float64. Changes each value by < 1e-7 (for a float32 graph).
        return probs / probs.sum(axis=1, keepdims=True)

    def feature_importance(self) -> dict[str, float]:
        recorded = self.options.get("feature_importance") or {}
        return {name: float(recorded[name]) for name in self.feature_names if name in recorded}

    def metadata(self) -> dict[str, str]:
        meta = {
            "onnxruntime_version": ort.__version__,
            "producer": self.header.get("producer", ""),
            "opset": self.header.get("opset", ""),
            "input": f"{self.input_name} {np.dtype(self.dtype).name} [n, {len(self.feature_names)}]",
            "probabilities": self.output_name,
        }
        if self.options.get("source"):
            meta["source"] = str(self.options["source"])
        return meta

    @classmethod
    def train(cls, data: TrainingData, params: dict[str, Any], out_dir: Path, progress: Progress) -> TrainingResult:
        """Train `params["source"]` (lightgbm, the default, or xgboost) through its own adapter,
        convert it to ONNX (float32 input, as onnxmltools' tree converters emit) and check the
        export against the native model on the validation rows (recorded in `info`)."""
        params = dict(params)
        source = str(params.pop("source", DEFAULT_SOURCE))
        source_cls = _source_adapter(source)
        if list(data.classes) != list(CLASSES):
            raise ValueError(f"classes {data.classes} are not {list(CLASSES)}")
        out_dir = Path(out_dir)
        with tempfile.TemporaryDirectory(prefix="tickserve-onnx-") as tmp:
            result = source_cls.train(data, params, Path(tmp), progress)
            native = source_cls.load(Path(tmp), _manifest_view(data, result.model_file, result.options))
            model = _convert(source, Path(tmp) / result.model_file, len(data.feature_names))
            importance = {name: float(v) for name, v in native.feature_importance().items()}
            reference = native.predict_proba(data.x_valid)
        _annotate(model, source, data)
        (out_dir / MODEL_FILE).write_bytes(model.SerializeToString())

        # Load it as the server will (input and output found in the graph), then check it
        # against the native model on the validation rows.
        class_order = list(range(N_CLASSES))  # the converters label column j with class j = data.classes[j]
        exported = cls.load(out_dir, _manifest_view(data, MODEL_FILE, {"class_order": class_order}))
        probs = exported.predict_proba(data.x_valid)
        max_diff = float(np.abs(probs - reference).max()) if len(probs) else 0.0
        flips = int((probs.argmax(axis=1) != reference.argmax(axis=1)).sum())
        if flips > MAX_EXPORT_FLIP_RATE * len(probs):
            raise RuntimeError(
                f"the ONNX export disagrees with the native {source} model on {flips} of {len(probs)} "
                "validation rows' classes: the conversion is wrong, not merely rounded"
            )
        progress(1, 1, f"exported to ONNX: max |onnx - native| {max_diff:.2g}, {flips} of {len(probs)} classes flipped")
        options = {
            "input": exported.input_name,
            "probabilities": exported.output_name,
            "class_order": class_order,
            "source": source,
            "feature_importance": importance,
        }
        info = {
            **result.info,
            # The export is float32 (inputs, split thresholds, sums): a row whose feature lies
            # within float32 rounding of a float64 LightGBM threshold takes the other branch.
            "onnx_max_abs_diff": max_diff,
            "onnx_class_flips": float(flips),
        }
        return TrainingResult(MODEL_FILE, {**result.parameters, "source": source}, info, options)


@hookimpl
def tickserve_adapters() -> list[type[ModelAdapter]]:
    return [OnnxAdapter]


# --- loading ---------------------------------------------------------------------------


def _pick_input(session: ort.InferenceSession, name: str | None):
    inputs = session.get_inputs()
    if name is not None:
        for i in inputs:
            if i.name == name:
                return i
        raise ValueError(f"the graph has no input {name!r} (inputs: {[i.name for i in inputs]})")
    if len(inputs) != 1:
        raise ValueError(f"the graph has {len(inputs)} inputs {[i.name for i in inputs]}: name one in options['input']")
    return inputs[0]


def _pick_output(session: ort.InferenceSession, name: str | None):
    outputs = session.get_outputs()
    if name is not None:
        for o in outputs:
            if o.name == name:
                if o.type not in _DTYPES:
                    hint = " (a ZipMap? convert with zipmap=False)" if "map" in o.type or "seq" in o.type else ""
                    raise ValueError(f"output {name!r} is {o.type}, not a float tensor{hint}")
                if len(o.shape) != 2 or (isinstance(o.shape[1], int) and o.shape[1] != N_CLASSES):
                    raise ValueError(f"output {name!r} has shape {o.shape}; need [n, {N_CLASSES}]")
                return o
        raise ValueError(f"the graph has no output {name!r} (outputs: {[o.name for o in outputs]})")
    found = [o for o in outputs if o.type in _DTYPES and len(o.shape) == 2 and o.shape[1] == N_CLASSES]
    if len(found) != 1:
        described = ", ".join(f"{o.name} {o.type} {o.shape}" for o in outputs)
        raise ValueError(
            f"cannot tell the probabilities output: need exactly one float tensor of shape [n, {N_CLASSES}], "
            f"the graph has {described}; name it in options['probabilities']"
        )
    return found[0]


def _columns(class_order, classes: list[str]) -> np.ndarray | None:
    """Column indices that put the model's output in the manifest's class order (None: as is)."""
    if class_order is None:
        return None
    try:
        order = [classes.index(c) if isinstance(c, str) else int(c) for c in class_order]
    except (TypeError, ValueError):
        order = None
    if order is None or sorted(order) != list(range(N_CLASSES)):
        raise ValueError(
            f"options['class_order'] {class_order!r} must list the class of each output column: "
            f"a permutation of 0..{N_CLASSES - 1} or of {classes}"
        )
    if order == list(range(N_CLASSES)):
        return None
    return np.argsort(order)  # result column k = the model column holding class k


def _read_header(raw: bytes) -> dict[str, str]:
    """producer and opset imports from a serialized ModelProto, without the onnx package: walks
    the top-level protobuf fields (2 producer_name, 3 producer_version, 8 opset_import) and
    skips the rest (the graph). Best effort: metadata only."""
    data = memoryview(raw)

    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7

    def fields(start: int, end: int):
        pos = start
        while pos < end:
            key, pos = varint(pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = varint(pos)
            elif wire == 2:
                size, pos = varint(pos)
                value, pos = (pos, pos + size), pos + size
            elif wire in (1, 5):
                value, pos = None, pos + (8 if wire == 1 else 4)
            else:
                raise ValueError(f"wire type {wire}")
            yield number, value

    producer, version, opsets = "", "", []
    try:
        for number, value in fields(0, len(data)):
            if number == 2:
                producer = bytes(data[value[0] : value[1]]).decode()
            elif number == 3:
                version = bytes(data[value[0] : value[1]]).decode()
            elif number == 8:
                domain, opset = "", 0
                for n, v in fields(*value):
                    if n == 1:
                        domain = bytes(data[v[0] : v[1]]).decode()
                    elif n == 2:
                        opset = v
                opsets.append(f"{domain or 'ai.onnx'} {opset}")
    except (IndexError, ValueError, UnicodeDecodeError):
        return {}
    return {"producer": f"{producer} {version}".strip(), "opset": ", ".join(opsets)}


# --- training / export -------------------------------------------------------------------


def _source_adapter(source: str) -> type[ModelAdapter]:
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is not one of {sorted(SOURCES)}")
    try:
        return installed_adapter(source)
    except KeyError as exc:
        raise ImportError(f"exporting a {source} model needs {SOURCES[source]} installed ({exc.args[0]})") from None


def _manifest_view(data: TrainingData, model_file: str, options: dict[str, Any]) -> ModelManifest:
    """The manifest an adapter's load() reads, for a model not yet in a repository."""
    return ModelManifest(
        name="onnx-export",
        version="0",
        adapter="",
        model_file=model_file,
        feature_names=list(data.feature_names),
        feature_stage_version="",
        classes=list(data.classes),
        options=dict(options),
    )


def _convert(source: str, model_path: Path, n_features: int):
    try:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType
    except ImportError as exc:
        raise ImportError(
            f"exporting to ONNX needs the export extra: pip install 'tickserve-onnx[export]' ({exc})"
        ) from exc
    initial_types = [(INPUT_NAME, FloatTensorType([None, n_features]))]
    if source == "lightgbm":
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(model_path))
        # zipmap=False: probabilities as a plain [n, 3] tensor, not a list of maps.
        return onnxmltools.convert_lightgbm(booster, initial_types=initial_types, zipmap=False)
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(model_path))
    booster.feature_names = None  # the converter accepts only the default names f0, f1, ...
    return onnxmltools.convert_xgboost(booster, initial_types=initial_types)


def _annotate(model, source: str, data: TrainingData) -> None:
    """Make the file self-describing for consumers outside tickserve (the manifest still rules)."""
    for key, value in {
        "tickserve.source": source,
        "tickserve.feature_names": json.dumps(list(data.feature_names)),
        "tickserve.classes": json.dumps(list(data.classes)),
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


__all__ = ["MODEL_FILE", "OnnxAdapter", "session_options", "tickserve_adapters"]
