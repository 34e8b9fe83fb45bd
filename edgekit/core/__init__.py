"""What every layer uses: errors, files, progress, versions, threads. Imports nothing of edgekit."""
