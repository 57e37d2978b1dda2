"""Hearing the music: sources (file, playback, device), the causal analyzer, tempo, demo synth.

Nothing here imports torch: audio analysis runs beside the model, never through it.
"""
