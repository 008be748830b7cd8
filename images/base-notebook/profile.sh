# Login shells on a Xiji node (terminals, ssh) see the notebook's Python first.
export PATH=/opt/venv/bin:$PATH
export XIJI_HOSTFILE=/etc/xiji/hostfile
# The CA bundle the hub gives every node (also set in the nodes' environment by the spawner).
if [ -e /etc/xiji/ca-certificates.crt ]; then
    for var in PIP_CERT REQUESTS_CA_BUNDLE SSL_CERT_FILE CURL_CA_BUNDLE GIT_SSL_CAINFO \
        CONDA_SSL_VERIFY NODE_EXTRA_CA_CERTS; do
        eval "[ -n \"\${$var:-}\" ] || export $var=/etc/xiji/ca-certificates.crt"
    done
    unset var
fi
