"""`ods-duo watch`: zone files dropped into a node's input directory become signed zones."""
