"""``falcon export``: a search's recommendation as the artefacts users deploy.

:mod:`tools.export.artefacts` and :mod:`tools.export.deploy` are the pure core (a recommendation
and its measured figures in, file texts out): the first holds the types, the sizing, the headers and
the Triton model configuration, the second the KServe InferenceService, the Kubernetes Deployment +
Service + HPA, the compose file and :func:`~tools.export.deploy.export`, which builds any format; the CLI (``tools/cli/export_cmds.py``) and the
dashboard's download endpoint are the shell that reads the search and writes the files.
The Python-backend ``model.py`` the export ships beside the ONNX file is the served trials' own
(``services/trial_runner/triton_model.py``, copied, never imported), and the Triton model
configuration is theirs too (``services/domain/triton_repo.py``). See docs/export.md."""
