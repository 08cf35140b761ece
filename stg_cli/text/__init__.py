"""Narration text: caption files (HowTo100M JSON, CSV, SRT, WebVTT) and text normalisation."""
