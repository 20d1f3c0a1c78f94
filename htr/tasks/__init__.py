"""Small synthetic tasks that exercise the recurrent cells outside handwriting recognition."""
