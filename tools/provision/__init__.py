"""Provisioning for field technicians: ``citypack provision …`` (see README.md beside this file).

Modules: :mod:`.inventory` (batch and secrets files, DevEUIs, AppKeys), :mod:`.exports` (OS2iot,
The Things Stack, ChirpStack import files), :mod:`.chirpstack` and :mod:`.registry` with
:mod:`.register` (registration), :mod:`.deploy` (board or directory), :mod:`.labels` (TR005),
:mod:`.verify` (the install check), :mod:`.errors`.
"""
