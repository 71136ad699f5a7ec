"""Where each kind of model goes in each WebUI, how to tell the WebUIs apart, safe names.

One module per WebUI holds its detection, its routing table (each row citing the
WebUI's own source) and the reading of its configured folders:

- :mod:`~civit.layouts.a1111`: ``a1111`` (AUTOMATIC1111) and ``forge`` (Forge,
  reForge, Forge Classic/Neo), ``COMMANDLINE_ARGS`` in ``webui-user.sh``/``.bat``;
- :mod:`~civit.layouts.sdnext`: ``sdnext``, its ``config.json``;
- :mod:`~civit.layouts.comfyui`: ``comfyui`` (git, portable, desktop),
  ``extra_model_paths.yaml``;
- :mod:`~civit.layouts.swarmui`: ``swarmui``, ``Data/Settings.fds``;
- :mod:`~civit.layouts.fooocus`: ``fooocus``, ``config.txt``;
- :mod:`~civit.layouts.stabilitymatrix`: ``stabilitymatrix``, its shared ``Models/``;
- :mod:`~civit.layouts.flat`: ``flat``, everything in one folder.

:mod:`~civit.layouts.detection` tries them in order (:data:`DETECTION_ORDER`),
:mod:`~civit.layouts.routing` decides a file's row (:func:`route`) and folder
(:func:`folder_for`, :func:`destination`), :mod:`~civit.layouts.filenames` keeps names
safe. For other parts of civit the two entry points are :func:`detect_layout` (the
layout of a root) and :func:`folder_for` (layout + file -> relative folder).
"""

from __future__ import annotations

from civit.layouts.base import (
    LAYOUTS,
    ROWS,
    CardKind,
    Detection,
    Folder,
    LayoutChoice,
    LayoutName,
    RootFolders,
    WebUI,
)
from civit.layouts.detection import (
    DETECTION_ORDER,
    WEBUIS,
    detect_layout,
    find_layout_above,
    resolve_layout,
    webui,
)
from civit.layouts.filenames import path_inside, safe_filename
from civit.layouts.routing import (
    FILE_TYPE_ROUTES,
    SUBFOLDER_FIELDS,
    Destination,
    Route,
    check_subfolder,
    destination,
    diffusion_only,
    folder_for,
    is_full_checkpoint_base,
    prepare_folder,
    read_safetensors_names,
    render_subfolder,
    route,
    row_label,
    safetensors_names,
)

__all__ = [
    "DETECTION_ORDER",
    "FILE_TYPE_ROUTES",
    "LAYOUTS",
    "ROWS",
    "SUBFOLDER_FIELDS",
    "WEBUIS",
    "CardKind",
    "Destination",
    "Detection",
    "Folder",
    "LayoutChoice",
    "LayoutName",
    "RootFolders",
    "Route",
    "WebUI",
    "check_subfolder",
    "destination",
    "detect_layout",
    "diffusion_only",
    "find_layout_above",
    "folder_for",
    "is_full_checkpoint_base",
    "path_inside",
    "prepare_folder",
    "read_safetensors_names",
    "render_subfolder",
    "resolve_layout",
    "route",
    "row_label",
    "safe_filename",
    "safetensors_names",
    "webui",
]
