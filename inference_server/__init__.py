"""inference_server package."""
