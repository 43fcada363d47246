"""Triton Python-backend model: ONNX Runtime with the settings of this model's configuration.

A served trial deploys it beside ``model.onnx`` (``services/trial_runner/model_repo.py``) and
``falcon export`` ships it; Triton loads it when the model runs on the Python backend (an exported
entry: ``tritonserver --model-config-name=python-ort``, configs/python-ort.pbtxt). It reads the
same fields Triton's ONNX Runtime backend reads from the configuration (optimization.graph.level,
the intra_op_thread_count / inter_op_thread_count / gpu_mem_limit parameters), so both backends
apply one configuration; the graph_opt parameter (the knob's value) wins over the level where both
are given. Triton's dynamic batcher hands ``execute`` the requests it gathered (up to
max_batch_size, waiting at most max_queue_delay_microseconds): they run as one ONNX Runtime call.
Needs numpy and onnxruntime (onnxruntime-gpu on a GPU) in the Python that runs the backend's stub."""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

LEVELS = {-1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, 1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
# the knob's own value (parameter graph_opt), which the served trials applied as such
NAMED = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
         "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        level = int(((config.get("optimization") or {}).get("graph") or {}).get("level", 0) or 0)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = NAMED.get(params.get("graph_opt", ""),
                                                  LEVELS.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL))
        opts.intra_op_num_threads = int(params.get("intra_op_thread_count") or 0)
        opts.inter_op_num_threads = int(params.get("inter_op_thread_count") or 0)
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU":
            cuda = {"device_id": int(args.get("model_instance_device_id") or 0)}
            if params.get("gpu_mem_limit"):
                cuda["gpu_mem_limit"] = int(params["gpu_mem_limit"])
            # TensorRT first where this ONNX Runtime has it (int8 on a GPU needs it), then CUDA
            trt = [("TensorrtExecutionProvider", {"device_id": cuda["device_id"]})] \
                if "TensorrtExecutionProvider" in ort.get_available_providers() else []
            providers = [*trt, ("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, opts, providers=providers)
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        feeds = {name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
                 for name in self.inputs}
        sizes = [len(x) for x in feeds[self.inputs[0]]]
        results = self.session.run(self.outputs, {k: np.concatenate(v) for k, v in feeds.items()})
        responses, start = [], 0
        for n in sizes:
            tensors = [pb_utils.Tensor(name, out[start:start + n]) for name, out in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses
