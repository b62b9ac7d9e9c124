pytest_plugins = [
    "tests.fixtures.mariadb",
    "tests.fixtures.rabbitmq",
    "tests.fixtures.identity_server",
]
