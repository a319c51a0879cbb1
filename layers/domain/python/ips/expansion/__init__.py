"""Expansion (the expand function): one chunk of CSV rows into product records and image messages, resumably."""
