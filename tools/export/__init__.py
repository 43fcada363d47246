"""``falcon export``: a search's recommendation as the artefacts users deploy.

:mod:`tools.export.artefacts` is the pure core (a recommendation and its measured figures in,
file texts out: a Triton model repository entry, a KServe InferenceService, a Kubernetes
Deployment + Service + HPA, a compose file); the CLI (``tools/cli/export_cmds.py``) and the
dashboard's download endpoint are the shell that reads the search and writes the files.
``triton_model.py`` is the Triton Python-backend model the export ships beside the ONNX file
(it is copied, never imported here). See docs/export.md."""
