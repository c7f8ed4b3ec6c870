"""The mock domain's databases and tools.

Agent side: users own tasks; a task has a title, an optional description and a status (pending or completed).
User side: a notification inbox. Behaviour follows upstream's (ids ``task_<n+1>``, the error texts its tasks'
recorded histories show, which helpers tasks call), so its tasks' gold actions give the same outcomes here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keye_agent.tau.toolkit import Toolkit, env_tool

TaskStatus = Literal["pending", "completed"]


class TaskItem(BaseModel):
    task_id: str = Field(description="Unique identifier of the task")
    title: str = Field(description="Title of the task")
    description: str | None = Field(None, description="Optional longer description")
    status: TaskStatus = Field(description="pending or completed")


class UserRecord(BaseModel):
    user_id: str
    name: str
    tasks: list[str] = Field(description="Ids of the user's tasks, oldest first")


class MockDB(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: dict[str, TaskItem]
    users: dict[str, UserRecord]


class Notification(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notification_id: str
    message: str
    status: Literal["unread", "read"] = "unread"
    task_id: str | None = None


class MockUserDB(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notifications: dict[str, Notification] = Field(default_factory=dict)


class MockTools(Toolkit):
    """The agent's tools: create tasks, list users, change a task's status, hand over to a human."""

    db: MockDB

    @env_tool("write")
    def create_task(self, user_id: str, title: str, description: str | None = None) -> TaskItem:
        """Create a new pending task for a user.

        Args:
            user_id: Id of the user who will own the task, e.g. "user_1".
            title: Title of the new task.
            description: Optional longer description of the task.
        """
        if user_id not in self.db.users:
            raise ValueError(f"User {user_id} not found")
        task_id = f"task_{len(self.db.tasks) + 1}"
        item = TaskItem(task_id=task_id, title=title, description=description, status="pending")
        self.db.tasks[task_id] = item
        self.db.users[user_id].tasks.append(task_id)
        return item

    @env_tool("read")
    def get_users(self) -> list[UserRecord]:
        """List every user with the ids of their tasks."""
        return list(self.db.users.values())

    @env_tool("write")
    def update_task_status(self, task_id: str, status: TaskStatus) -> TaskItem:
        """Set the status of an existing task.

        Args:
            task_id: Id of the task, e.g. "task_1".
            status: The new status: "pending" or "completed".
        """
        if task_id not in self.db.tasks:
            raise ValueError(f"Task {task_id} not found")
        item = self.db.tasks[task_id]
        item.status = status
        return item

    @env_tool("generic")
    def transfer_to_human_agents(self, summary: str) -> str:
        """Hand the conversation to a human agent. Do this only when the user asks for a human, or when the policy
        and the tools leave no way to solve the user's issue.

        Args:
            summary: A short summary of the user's issue for the human agent.
        """
        return "Transfer successful"

    # helpers for env assertions (not tools)

    def assert_number_of_tasks(self, user_id: str, expected_number: int) -> bool:
        if user_id not in self.db.users:
            raise ValueError(f"User {user_id} not found")
        return len(self.db.users[user_id].tasks) == expected_number

    def assert_task_status(self, task_id: str, expected_status: TaskStatus) -> bool:
        if task_id not in self.db.tasks:
            raise ValueError(f"Task {task_id} not found")
        return self.db.tasks[task_id].status == expected_status


class MockUserTools(Toolkit):
    """The simulated user's tools: a notification inbox."""

    db: MockUserDB

    @env_tool("read")
    def check_notifications(self) -> list[Notification]:
        """List every notification in your inbox."""
        return list(self.db.notifications.values())

    @env_tool("write")
    def dismiss_notification(self, notification_id: str) -> str:
        """Mark a notification as read.

        Args:
            notification_id: Id of the notification, e.g. "notif_1".
        """
        if notification_id not in self.db.notifications:
            raise ValueError(f"Notification {notification_id} not found")
        self.db.notifications[notification_id].status = "read"
        return f"Notification {notification_id} dismissed"

    # helpers for initialization actions and env assertions (not tools)

    def add_notification(self, notification_id: str, message: str, task_id: str | None = None) -> Notification:
        note = Notification(notification_id=notification_id, message=message, task_id=task_id)
        self.db.notifications[notification_id] = note
        return note

    def assert_notification_status(self, notification_id: str, expected_status: str) -> bool:
        if notification_id not in self.db.notifications:
            raise ValueError(f"Notification {notification_id} not found")
        return self.db.notifications[notification_id].status == expected_status
