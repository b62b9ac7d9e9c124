from control.common.migrate import run_env
from control.identity.models import Base

run_env(Base.metadata)
