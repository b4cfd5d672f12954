"""Rules and lists as data: what acts after the model (block list > allow list > rules >
model), parsed and compiled here, applied by the service where the action is chosen."""
