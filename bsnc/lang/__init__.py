"""The `.bsn` language: text to a syntax tree (parser), back to text (formatter), evaluation
and expansion into a flat list of layers and edges, imports, and the checks that build the
network IR (`bsnc.ir.Network`). Entry point: `bsnc.lang.frontend.load_network`."""
