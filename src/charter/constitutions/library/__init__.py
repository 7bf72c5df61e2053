"""The bundled constitutions, one YAML file each; `charter constitutions list` shows them."""
