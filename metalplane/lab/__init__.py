"""The virtual rack (:mod:`metalplane.lab.lab`: ``metalplane lab up|status|down``) and the
demo on it (:mod:`metalplane.lab.demo`). It drives its server through
:mod:`metalplane.client` over HTTP and imports none of the server's layers."""
