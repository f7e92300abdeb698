#!/bin/sh
# Run by LocalStack (docker-compose.yaml) when it is ready: create the queue piivault drains.
awslocal sqs create-queue --queue-name login-queue >/dev/null
echo "login-queue created"
