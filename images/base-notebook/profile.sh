# Login shells on a Xiji node (terminals, ssh) see the notebook's Python first.
export PATH=/opt/venv/bin:$PATH
export XIJI_HOSTFILE=/etc/xiji/hostfile
