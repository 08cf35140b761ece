"""Runs that combine grounding, drawing and scoring: many videos grounded and written
(:mod:`stg_cli.runs.grounding`), a labelled split grounded and scored
(:mod:`stg_cli.runs.evaluation`)."""
