"""Models as the server holds them: `manifest.py` (what a version's manifest.json says),
`repository.py` (the model repository: versions, their lifecycle, `LoadedModel.predict`),
`ensemble.py` (soft voting over member adapters), `load_check.py` (the whole serving path run
on synthetic ticks before a version is READY)."""
