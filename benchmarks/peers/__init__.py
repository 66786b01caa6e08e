"""The models a user would pick instead of causaldiff, written from their papers for ``benchmarks/peers.py``:
DeepSCM's conditional VAE (:mod:`peers.vae`) and a small hierarchical VAE as in causal-gen (:mod:`peers.hvae`),
trained on the same world data (:mod:`peers.train`) and run as counterfactual models in Pearl's three steps through
the attribute SCM causaldiff fits (:class:`peers.base.PeerPipeline`). Not part of the package's inference path."""
