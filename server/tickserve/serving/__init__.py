"""The gRPC front end: thin servicers over `tickserve.engine`, converting protobuf at the edge."""
