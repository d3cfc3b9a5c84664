"""The network shell: the websocket server and HTTP on the same port (downloads, uploads,
health, the page), authentication, origins and hosts, TLS and the admin API."""
