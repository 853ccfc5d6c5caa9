"""Readers and writers of the project's file formats (pkl, csv, pbtxt), with validation; no torch."""
