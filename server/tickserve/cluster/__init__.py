"""Replicas behind nginx on loopback (`tickserve cluster`): nginx_config renders the config and
the upstream, nginx finds and runs nginx, replicas runs `tickserve serve` processes, health polls
their gRPC health and applies it to the upstream, runner puts them together."""

from .runner import Cluster, ClusterConfig

__all__ = ["Cluster", "ClusterConfig"]
