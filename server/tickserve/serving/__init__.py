"""The gRPC front end: thin servicers over `tickserve.core.session`, converting protobuf at the edge."""
