"""Status (the status function): what a client sees when it polls a request: exact counts and a page of products."""
