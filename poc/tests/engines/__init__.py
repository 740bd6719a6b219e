"""Engines written on the public interface only, as a package of its own would write them."""
