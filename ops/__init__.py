"""Operating the cluster: ``ops.local`` (plain processes under supervisor) and the compose side."""
