"""The demo, `make up`, and the evaluation tools: the one part of factory_sim that may import the model
package and the services (the line itself imports only factory_core)."""
