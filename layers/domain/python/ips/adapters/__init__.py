"""Adapters from the domain's ports to AWS and MongoDB. The only modules that import boto3 or pymongo."""
