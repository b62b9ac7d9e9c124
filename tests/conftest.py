pytest_plugins = [
    "tests.fixtures.mariadb",
    "tests.fixtures.rabbitmq",
    "tests.fixtures.identity_server",
    "tests.fixtures.image_server",
    "tests.fixtures.compute_server",
    "tests.fixtures.network_server",
    "tests.fixtures.volume_server",
]
