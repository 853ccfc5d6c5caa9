"""Datasets: the AVA-style pkl dataset, its transforms and samplers, and the synthetic Chaotic World generator."""
